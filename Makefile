# tlsd — make help lists the targets.
GO       ?= go
BIN      ?= bin/tlsd
PKGS     := ./...

.PHONY: help build test lint fmt run validate-examples bench fuzz clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/tlsd
	$(GO) build -o $(BIN) ./cmd/tlsd

test: lint ## gofmt check, go vet, and every test with the race detector
	$(GO) test -race -count=1 $(PKGS)

lint: ## gofmt check and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

run: build ## validate and show the quickstart example (the data plane comes next)
	@chmod 600 examples/quickstart/certs/*.key
	./$(BIN) validate examples/quickstart
	@echo
	@echo "The quickstart is valid. Serving it (tlsd run) arrives with the data plane;"
	@echo "try a broken file meanwhile:  printf 'apiVersion: tlsd/v1\nkind: Endpoint\nname: x\ntls:\n  min_version: 1.3\n' > /tmp/x.yaml && ./$(BIN) validate /tmp/x.yaml"

validate-examples: build ## tlsd validate every example
	@chmod 600 examples/*/certs/*.key
	./$(BIN) validate examples/*

bench: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz: ## fuzz the config loader for 60 s
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 60s ./schema

clean: ## remove build output
	rm -rf bin
