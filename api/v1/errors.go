package v1

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one invalid field of an object.
type FieldError struct {
	// Path is the field's path in the manifest, as in
	// "spec.ingress[0].destination.ports[1]".
	Path string
	// Value is the invalid value as written (Error quotes it), or empty
	// when there is no single value to show.
	Value string
	// Reason says what is wrong.
	Reason string
}

// Error returns `<path>: "<value>": <reason>`, leaving out the value when
// it is empty.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Value != "" {
		b.WriteString(strconv.Quote(e.Value))
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// DocumentError is an error in one document of a manifest stream.
type DocumentError struct {
	// Source names the stream, usually a file name.
	Source string
	// Document is the document's number in the stream, from 1.
	Document int
	// Item is the item's number, from 1, in a JSON array or a List
	// document; 0 for a document that holds one object.
	Item int
	// Kind, Namespace and Name identify the object as far as known.
	Kind, Namespace, Name string

	// Err is the problem: a *FieldError or another decoding error.
	Err error
}

// Error returns `<source>: document <n> (<Kind> <ns>/<name>): <err>`.
func (e *DocumentError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "document %d", e.Document)
	if e.Item > 0 {
		fmt.Fprintf(&b, " item %d", e.Item)
	}
	if e.Kind != "" {
		b.WriteString(" (")
		b.WriteString(e.Kind)
		switch {
		case e.Name != "" && e.Namespace != "":
			b.WriteString(" " + e.Namespace + "/" + e.Name)
		case e.Name != "":
			b.WriteString(" " + e.Name)
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error.
func (e *DocumentError) Unwrap() error { return e.Err }

// fieldPath builds the paths of FieldErrors.
type fieldPath string

func (p fieldPath) child(name string) fieldPath {
	if p == "" {
		return fieldPath(name)
	}
	return p + "." + fieldPath(name)
}

func (p fieldPath) index(i int) fieldPath {
	return p + fieldPath("["+strconv.Itoa(i)+"]")
}

func (p fieldPath) key(k string) fieldPath {
	return p + fieldPath("["+strconv.Quote(k)+"]")
}

// fieldErrors collects FieldErrors.
type fieldErrors []*FieldError

func (e *fieldErrors) add(p fieldPath, value, reason string) {
	*e = append(*e, &FieldError{Path: string(p), Value: value, Reason: reason})
}

func (e *fieldErrors) addf(p fieldPath, value, format string, args ...any) {
	e.add(p, value, fmt.Sprintf(format, args...))
}

// errs returns the collected errors as a slice of error.
func (e fieldErrors) errs() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}
