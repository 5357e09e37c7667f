package v1

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeManifests checks that DecodeManifests never panics, that its
// errors are DocumentErrors, and that whatever decodes encodes to YAML
// that decodes to equal objects. The committed seed corpus is in
// testdata/fuzz/FuzzDecodeManifests; the examples and test manifests are
// added as seeds too.
func FuzzDecodeManifests(f *testing.F) {
	files, _ := filepath.Glob("../../examples/*")
	files = append(files, "testdata/all-fields.yaml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(calicoGNP))
	f.Add([]byte(k8sPolicy("  podSelector: {matchLabels: {a: b}}\n  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80, endPort: 90}]}]\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		objs, err := DecodeManifests("fuzz", data)
		if err != nil {
			if objs != nil {
				t.Fatalf("objects returned with an error")
			}
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var de *DocumentError
				if !errors.As(e, &de) {
					t.Fatalf("error %q is not a *DocumentError", e)
				}
			}
			return
		}
		y, err := EncodeYAML(objs...)
		if err != nil {
			t.Fatalf("EncodeYAML: %v", err)
		}
		again, err := DecodeManifests("encoded", y)
		if err != nil {
			t.Fatalf("decoding the encoded objects: %v\n%s", err, y)
		}
		if diff := cmp.Diff(objs, again, equateEmpty); diff != "" {
			t.Fatalf("round trip changed the objects (-before +after):\n%s\nencoded:\n%s", diff, y)
		}
	})
}
