package startup

import "testing"

func TestPlugin(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"tabby", "agent"}, nil, false},
		{[]string{"/opt/cni/bin/tabby"}, map[string]string{"CNI_COMMAND": "ADD"}, true},
		{[]string{"/opt/cni/bin/tabby-ipam"}, nil, true},
		{[]string{"tabby-ipam2"}, nil, false},
		{nil, map[string]string{"CNI_COMMAND": "VERSION"}, true},
		{nil, nil, false},
	} {
		if got := Plugin(tc.args, func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("Plugin(%q, %v) = %v, want %v", tc.args, tc.env, got, tc.want)
		}
	}
}
