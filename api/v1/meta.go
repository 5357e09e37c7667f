package v1

import "time"

// Group, Version and APIVersion name Tabby's own resource API.
const (
	Group      = "tabby.dev"
	Version    = "v1"
	APIVersion = Group + "/" + Version
)

// TypeMeta is the apiVersion and kind of a stored or decoded object.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// ObjectMeta is the metadata every resource carries, with Kubernetes'
// field names.
type ObjectMeta struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// ResourceVersion is the datastore revision the object was read at; it
	// is set by the datastore and used for compare-and-swap updates.
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	UID               string            `json:"uid,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
}

// Object is implemented by a pointer to every resource type.
type Object interface {
	GetTypeMeta() *TypeMeta
	GetObjectMeta() *ObjectMeta
}

// GetTypeMeta returns m.
func (m *TypeMeta) GetTypeMeta() *TypeMeta { return m }

// GetObjectMeta returns m.
func (m *ObjectMeta) GetObjectMeta() *ObjectMeta { return m }
