# Firebreak build. `make demo` and `make test` are the two set-up commands.
GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(wildcard plugins/cmd/firebreak-plugin-*))
GOFLAGS_BUILD := -trimpath
export CGO_ENABLED := 0
# go's build work, test binaries and tests' temporary directories stay out of
# /tmp: triage collection copies every executable under /tmp, /var/tmp and
# /dev/shm, and the suite's collection tests must not archive the suite's own
# test binaries. The path is short, because agents in the tests put Unix
# sockets under their temporary data directories.
ifeq ($(origin GOTMPDIR),undefined)
GOTMPDIR := $(shell for d in /var/lib/fbtest $(HOME)/.cache/fbtest; do mkdir -p $$d 2>/dev/null && [ -w $$d ] && echo $$d && break; done)
endif
export GOTMPDIR

.PHONY: all build proto proto-check catalog catalog-check lint vet test test-short test-race demo bench fuzz clean

all: build

## build: bin/firebreak, bin/firebreak-agent and bin/plugins/* with manifest.json
build:
	@mkdir -p $(BIN)/plugins
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/firebreak ./controller/cmd/firebreak
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/firebreak-agent ./agent/cmd/firebreak-agent
	@for p in $(PLUGINS); do echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/cmd/$$p"; \
		$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/plugins/$$p ./plugins/cmd/$$p || exit 1; done
	@chmod 0755 $(BIN)/plugins && chmod 0755 $(BIN)/plugins/firebreak-plugin-*
	$(BIN)/firebreak plugins manifest $(BIN)/plugins > /dev/null
	@echo "built $(BIN)/firebreak, $(BIN)/firebreak-agent and $(words $(PLUGINS)) plugins"

## proto: regenerate the Go code from proto/ with buf (tools pinned in go.mod)
proto:
	$(GO) tool buf lint
	$(GO) tool buf generate

## proto-check: buf lint, and fail when the committed generated code is stale
proto-check:
	$(GO) tool buf lint
	@rm -rf .proto-check && mkdir -p .proto-check
	@cp -r proto/gen .proto-check/committed
	$(GO) tool buf generate
	@if ! diff -r .proto-check/committed proto/gen > /dev/null; then \
		echo "proto/gen differs from a fresh generation: run 'make proto' and commit"; \
		rm -rf proto/gen && mv .proto-check/committed proto/gen; rm -rf .proto-check; exit 1; fi
	@rm -rf .proto-check
	@echo "proto: lint clean, generated code up to date"

## catalog: regenerate the first-party action descriptions the controller embeds
catalog:
	$(GO) run ./controller/actioncatalog/gen -o controller/actioncatalog/descriptions.json

## catalog-check: fail when the embedded action descriptions differ from the actions' own
catalog-check:
	$(GO) run ./controller/actioncatalog/gen -check -o controller/actioncatalog/descriptions.json

vet:
	$(GO) vet ./...

## lint: golangci-lint (pinned in go.mod as a Go tool) with .golangci.yml
lint:
	$(GO) tool golangci-lint run ./...

## test-short: unit tests only; end-to-end, network-namespace and bench tests skip
test-short:
	$(GO) test -count=1 -short -timeout 10m ./...

## test-race: the controller, agent and store packages under the race detector,
## and the in-process evidence upload (agent and controller in one process, so the
## detector sees both sides of an upload; -short skips it, hence its own line)
## (the detector needs cgo, so CGO_ENABLED=1 for this target only)
RACE_PKGS := ./controller/... ./agent/...
test-race: export CGO_ENABLED := 1
test-race:
	$(GO) test -count=1 -race -short -timeout 30m $(RACE_PKGS)
	$(GO) test -count=1 -race -timeout 10m -run '^TestEvidenceUploadInProcess$$' ./test/bench

## test: the whole suite, as CI runs it
test: proto-check catalog-check vet build
	$(GO) test -count=1 -timeout 45m ./...

## demo: the lab drill on the embedded default (SQLite, local evidence, AWS emulator);
## CONSOLE=1 keeps the lab up after the drill with the web console and prints a login link (Ctrl-C ends it)
demo: build
	$(BIN)/firebreak lab demo$(if $(CONSOLE), --console)

## bench: fleet dispatch benchmark
bench: build
	$(BIN)/firebreak bench fleet --agents 1000 --action noop

## fuzz: run every fuzz target for a short while
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; done; done

clean:
	rm -rf $(BIN)
