# Tabby: sudo make demo runs the main job; sudo make test installs every
# test dependency and runs all tests.
SHELL   := /bin/bash
# sudo's secure_path often lacks Go's directory (/usr/local/go/bin): find
# go there too, and put its directory on PATH for the scripts and tests,
# which run go themselves.
GO      ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)
GOBIN   := $(shell $(GO) env GOBIN)
ifeq ($(GOBIN),)
GOBIN   := $(shell $(GO) env GOPATH)/bin
endif
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/tabby

.PHONY: all build demo test test-deps unit lint fmt fuzz bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tabby

demo: build
	./scripts/demo.sh

test-deps:
	./scripts/install-test-deps.sh

# Every test, including the ones that need root and the kernel.
test: test-deps lint build
	$(GO) test -count=1 -timeout 30m ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./internal/selector/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeManifests -fuzztime=60s ./api/v1/
	$(GO) test -run='^$$' -fuzz=FuzzParseNetConf -fuzztime=60s ./internal/cni/

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

clean:
	rm -rf bin
