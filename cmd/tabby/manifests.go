package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// manifestFlags are -f and -R, shared by apply, create and delete.
type manifestFlags struct {
	files     []string
	recursive bool
}

// read decodes and validates every document of every file. It returns
// every error of every file together, and no objects if there is one.
func (m manifestFlags) read(stdin io.Reader) ([]v1.Object, error) {
	if len(m.files) == 0 {
		return nil, errors.New("-f: must name a file, a directory or - for standard input")
	}
	var objs []v1.Object
	var errs []error
	for _, f := range m.files {
		sources, err := m.expand(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, src := range sources {
			data, err := readSource(src, stdin)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			got, err := v1.DecodeManifests(src, data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			objs = append(objs, got...)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("-f %s: no objects found", strings.Join(m.files, ","))
	}
	return objs, nil
}

// expand turns one -f value into the files to read: the file itself, or
// the .yaml, .yml and .json files of a directory (recursively with -R),
// sorted by path.
func (m manifestFlags) expand(path string) ([]string, error) {
	if path == "-" {
		return []string{"-"}, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && !m.recursive {
				return fs.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-f %s: no .yaml, .yml or .json files in the directory", path)
	}
	slices.Sort(out)
	return out, nil
}

func readSource(src string, stdin io.Reader) ([]byte, error) {
	if src == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	return data, nil
}
