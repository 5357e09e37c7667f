package v1

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// strictChecker checks a decoded JSON value (from a json.Decoder with
// UseNumber) against the Go type it is about to be unmarshaled into, and
// reports with full paths what encoding/json would reject or silently
// accept: unknown fields (matched case-sensitively, unlike encoding/json),
// values of the wrong JSON type, numbers out of range, and values that a
// type's UnmarshalJSON rejects.
type strictChecker struct {
	errs *fieldErrors
	// unknownReason is the reason given for unknown fields.
	unknownReason string
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	intOrStringType = reflect.TypeFor[intstr.IntOrString]()
	fieldCache      sync.Map // reflect.Type -> map[string]reflect.Type
)

// unmarshalerReasons replaces the errors of the UnmarshalJSON methods of
// these types, which are written for programmers, not for users.
var unmarshalerReasons = map[reflect.Type]string{
	reflect.TypeFor[time.Time]():   `must be an RFC 3339 time such as "2024-05-01T12:00:00Z"`,
	reflect.TypeFor[metav1.Time](): `must be an RFC 3339 time such as "2024-05-01T12:00:00Z"`,
}

func (c *strictChecker) check(t reflect.Type, v any, p fieldPath) {
	if v == nil {
		return // null leaves the field at its zero value
	}
	if t.Kind() == reflect.Pointer {
		c.check(t.Elem(), v, p)
		return
	}
	if t == intOrStringType {
		c.checkIntOrString(v, p)
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		c.checkUnmarshaler(t, v, p)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.mismatch(p, v, "must be an object")
			return
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, known := fields[k]
			if !known {
				c.errs.add(p.child(k), "", c.unknownReason)
				continue
			}
			c.check(ft, m[k], p.child(k))
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			c.mismatch(p, v, "must be an object")
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			c.check(t.Elem(), m[k], p.key(k))
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			c.mismatch(p, v, "must be a list")
			return
		}
		for i, e := range l {
			c.check(t.Elem(), e, p.index(i))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			c.mismatch(p, v, "must be a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.mismatch(p, v, "must be true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			c.mismatch(p, v, "must be an integer")
			return
		}
		bits := t.Bits()
		if _, err := strconv.ParseInt(n.String(), 10, bits); err != nil {
			c.errs.addf(p, n.String(), "must be an integer between %d and %d", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			c.mismatch(p, v, "must be an integer")
			return
		}
		bits := t.Bits()
		if _, err := strconv.ParseUint(n.String(), 10, bits); err != nil {
			c.errs.addf(p, n.String(), "must be an integer between 0 and %d", uint64(math.MaxUint64)>>(64-bits))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			c.mismatch(p, v, "must be a number")
			return
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			c.errs.add(p, n.String(), "number is out of range")
		}
	case reflect.Interface:
		// Anything goes.
	default:
		c.errs.addf(p, "", "cannot decode into %s", t)
	}
}

// checkUnmarshaler runs t's UnmarshalJSON on v and reports its error.
func (c *strictChecker) checkUnmarshaler(t reflect.Type, v any, p fieldPath) {
	data, err := json.Marshal(v)
	if err != nil {
		c.errs.addf(p, "", "cannot decode: %v", err)
		return
	}
	u := reflect.New(t).Interface().(json.Unmarshaler)
	if err := u.UnmarshalJSON(data); err != nil {
		reason, ok := unmarshalerReasons[t]
		if !ok {
			reason = err.Error()
		}
		c.errs.add(p, scalarText(v), reason)
	}
}

// checkIntOrString checks a Kubernetes intstr.IntOrString (such as a
// NetworkPolicy port), which is a string or a 32-bit integer.
func (c *strictChecker) checkIntOrString(v any, p fieldPath) {
	switch x := v.(type) {
	case string:
	case json.Number:
		if _, err := strconv.ParseInt(x.String(), 10, 32); err != nil {
			c.errs.addf(p, x.String(), "must be a string or an integer between %d and %d", math.MinInt32, math.MaxInt32)
		}
	default:
		c.mismatch(p, v, "must be a string or an integer")
	}
}

// mismatch reports a value of the wrong JSON type.
func (c *strictChecker) mismatch(p fieldPath, v any, reason string) {
	c.errs.add(p, scalarText(v), reason)
}

// scalarText returns the text of a scalar JSON value (shortened), or ""
// for objects and lists.
func scalarText(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	default:
		return ""
	}
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return s
}

// jsonFields returns the JSON field names of struct type t with their
// types, including the promoted fields of embedded structs, as
// encoding/json sees them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, shadowed := fields[k]; !shadowed {
						fields[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	fieldCache.Store(t, fields)
	return fields
}

// decodeStrict checks v against obj's type and, if it fits, unmarshals it
// into obj. The returned FieldErrors say what did not fit.
func decodeStrict(obj any, v map[string]any, unknownReason string) (fieldErrors, error) {
	var errs fieldErrors
	c := strictChecker{errs: &errs, unknownReason: unknownReason}
	c.check(reflect.TypeOf(obj), v, "")
	if len(errs) > 0 {
		return errs, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("re-encoding document: %w", err)
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decoding document: %w", err)
	}
	return nil, nil
}
