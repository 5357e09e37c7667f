package memory

import (
	"strings"

	"github.com/tabbynet/tabby/internal/datastore"
)

// normalize returns key with its Kind lower-cased, as it is stored.
func normalize(key datastore.Key) datastore.Key {
	key.Kind = strings.ToLower(key.Kind)
	return key
}
