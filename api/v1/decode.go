package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// DecodeManifests decodes the resources in data, which source names in
// errors (usually a file name). data is a YAML stream of documents
// separated by "---" lines, a JSON object, or a JSON array of objects; a
// document may also be a list of objects or a List (kind "List" or
// "<Kind>List") with items.
//
// Each object is decoded strictly: unknown fields, values of the wrong
// type and invalid values are errors that name the field. Objects of
// other API versions are converted (projectcalico.org/v3 kinds and
// FelixConfiguration; Kubernetes networking.k8s.io/v1 NetworkPolicy and
// v1 Namespace). Then SetDefaults and Validate are applied.
//
// Every document is checked. If any has errors, DecodeManifests returns no
// objects and all the errors, joined; each is a *DocumentError whose text
// is "<source>: document <n> (<Kind> <namespace>/<name>): <problem>".
// Documents are numbered from 1; empty ones (blank or only comments) are
// counted but skipped.
func DecodeManifests(source string, data []byte) ([]Object, error) {
	var objs []Object
	var errs []error
	for i, doc := range splitDocuments(data) {
		o, e := decodeDocument(source, i+1, doc)
		objs = append(objs, o...)
		errs = append(errs, e...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

// splitDocuments splits a YAML stream at its "---" lines. Text before the
// first separator is a document only if it is not blank, so that a stream
// that starts with "---" starts with document 1.
func splitDocuments(data []byte) []string {
	var docs []string
	var cur strings.Builder
	first := true
	for line := range strings.SplitAfterSeq(string(data), "\n") {
		trimmed := strings.TrimRight(line, "\r\n")
		if rest, ok := strings.CutPrefix(trimmed, "---"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			if !first || strings.TrimSpace(cur.String()) != "" {
				docs = append(docs, cur.String())
			}
			first = false
			cur.Reset()
			cur.WriteString(rest)
			cur.WriteString("\n")
			continue
		}
		cur.WriteString(line)
	}
	if !first || strings.TrimSpace(cur.String()) != "" {
		docs = append(docs, cur.String())
	}
	return docs
}

// decodeDocument decodes document n of source.
func decodeDocument(source string, n int, doc string) ([]Object, []error) {
	docErr := func(err error) []error {
		return []error{&DocumentError{Source: source, Document: n, Err: err}}
	}
	j, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		return nil, docErr(fmt.Errorf("invalid YAML: %s", msg))
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, docErr(fmt.Errorf("invalid document: %w", err))
	}
	var items []any
	item := 0
	switch x := v.(type) {
	case nil:
		return nil, nil // empty document
	case []any:
		items, item = x, 1
	case map[string]any:
		kind, _ := x["kind"].(string)
		if kind == "List" || strings.HasSuffix(kind, "List") && x["items"] != nil {
			l, ok := x["items"].([]any)
			if !ok {
				return nil, docErr(fmt.Errorf("%s: items must be a list of objects", kind))
			}
			items, item = l, 1
		} else {
			items = []any{x}
		}
	default:
		return nil, docErr(errors.New("a document must be an object or a list of objects"))
	}

	var objs []Object
	var errs []error
	for i, it := range items {
		de := DocumentError{Source: source, Document: n}
		if item > 0 {
			de.Item = i + 1
		}
		m, ok := it.(map[string]any)
		if !ok {
			de.Err = errors.New("an item must be an object")
			errs = append(errs, &de)
			continue
		}
		de.Kind, de.Namespace, de.Name = identify(m)
		obj, fes, err := decodeObject(m)
		if err == nil && len(fes) == 0 {
			SetDefaults(obj)
			var verr fieldErrors
			if err := Validate(obj); err != nil {
				verr = unjoinFieldErrors(err)
			}
			fes = verr
		}
		if err != nil {
			e := de
			e.Err = err
			errs = append(errs, &e)
		}
		for _, fe := range fes {
			e := de
			e.Err = fe
			errs = append(errs, &e)
		}
		if err == nil && len(fes) == 0 {
			objs = append(objs, obj)
		}
	}
	return objs, errs
}

// unjoinFieldErrors returns the FieldErrors in an error from Validate.
func unjoinFieldErrors(err error) fieldErrors {
	var out fieldErrors
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		} else {
			out = append(out, &FieldError{Reason: e.Error()})
		}
	}
	return out
}

// identify returns the kind, namespace and name an object's manifest
// gives, with the namespace defaulted as SetDefaults does.
func identify(m map[string]any) (kind, namespace, name string) {
	kind, _ = m["kind"].(string)
	if meta, ok := m["metadata"].(map[string]any); ok {
		name, _ = meta["name"].(string)
		namespace, _ = meta["namespace"].(string)
	}
	if namespace == "" {
		apiVersion, _ := m["apiVersion"].(string)
		if namespacedManifest(apiVersion, kind) {
			namespace = DefaultNamespace
		}
	}
	return kind, namespace, name
}

// namespacedManifest reports whether objects of this apiVersion and kind
// are namespaced.
func namespacedManifest(apiVersion, kind string) bool {
	switch apiVersion {
	case APIVersion, calicoAPIVersion:
		k, ok := lookupExactKind(kind)
		return ok && k.Namespaced
	case k8sNetworkingAPIVersion:
		return kind == "NetworkPolicy"
	}
	return false
}

// decodeObject decodes one object of any supported apiVersion into a
// Tabby object, without defaults or validation.
func decodeObject(m map[string]any) (Object, fieldErrors, error) {
	apiVersion, ok1 := m["apiVersion"].(string)
	kind, ok2 := m["kind"].(string)
	switch {
	case m["apiVersion"] == nil:
		return nil, nil, errors.New("apiVersion is required")
	case m["kind"] == nil:
		return nil, nil, errors.New("kind is required")
	case !ok1 || !ok2:
		return nil, nil, errors.New("apiVersion and kind must be strings")
	}
	switch apiVersion {
	case APIVersion:
		k, ok := lookupExactKind(kind)
		if !ok {
			return nil, nil, fmt.Errorf("unknown kind %q of %s", kind, APIVersion)
		}
		obj := k.New()
		fes, err := decodeStrict(obj, m, "unknown field")
		return obj, fes, err
	case calicoAPIVersion:
		return decodeCalico(kind, m)
	case k8sNetworkingAPIVersion, k8sCoreAPIVersion:
		return decodeKubernetes(apiVersion, kind, m)
	}
	return nil, nil, fmt.Errorf("apiVersion %q is not supported: use %s, %s, %s NetworkPolicy or %s Namespace",
		apiVersion, APIVersion, calicoAPIVersion, k8sNetworkingAPIVersion, k8sCoreAPIVersion)
}

// ToJSON encodes obj as JSON, with apiVersion tabby.dev/v1 and its kind
// whatever its TypeMeta says. obj is not modified.
func ToJSON(obj Object) ([]byte, error) {
	k, ok := KindOf(obj)
	if !ok {
		return nil, fmt.Errorf("encoding %T: not a Tabby resource kind", obj)
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", k.Kind, obj.GetObjectMeta().Name, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", k.Kind, obj.GetObjectMeta().Name, err)
	}
	m["apiVersion"], _ = json.Marshal(APIVersion)
	m["kind"], _ = json.Marshal(k.Kind)
	return json.Marshal(m)
}

// ToYAML encodes obj as a YAML document, with apiVersion tabby.dev/v1 and
// its kind whatever its TypeMeta says. obj is not modified.
func ToYAML(obj Object) ([]byte, error) {
	j, err := ToJSON(obj)
	if err != nil {
		return nil, err
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encoding %s as YAML: %w", obj.GetObjectMeta().Name, err)
	}
	return y, nil
}

// EncodeYAML encodes objs as a YAML stream, one document each, that
// DecodeManifests reads back.
func EncodeYAML(objs ...Object) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		y, err := ToYAML(o)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}
