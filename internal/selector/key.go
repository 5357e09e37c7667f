package selector

import "strings"

// Label keys follow Kubernetes: an optional prefix and a '/', then a name.
// The name is 1-63 characters of letters, digits, '-', '_' and '.', and
// starts and ends with a letter or digit. The prefix is a DNS subdomain: at
// most 253 characters, dot-separated labels of lowercase letters, digits and
// '-', each starting and ending with a letter or digit.

// keyError returns why key is not a valid label key, or "" if it is valid.
func keyError(key string) string {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix {
		if strings.Contains(name, "/") {
			return "a label key contains at most one '/'"
		}
		if msg := prefixError(prefix); msg != "" {
			return msg
		}
	}
	switch {
	case name == "":
		return "the name part is empty"
	case len(name) > 63:
		return "the name part is longer than 63 characters"
	case !isAlnum(name[0]) || !isAlnum(name[len(name)-1]):
		return "the name part must start and end with a letter or digit"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return "the name part may contain only letters, digits, '-', '_' and '.'"
		}
	}
	return ""
}

func prefixError(prefix string) string {
	const bad = "the prefix before '/' must be a lowercase DNS subdomain such as example.com"
	switch {
	case prefix == "":
		return "the prefix before '/' is empty"
	case len(prefix) > 253:
		return "the prefix before '/' is longer than 253 characters"
	}
	for label := range strings.SplitSeq(prefix, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return bad
			}
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
