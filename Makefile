# tlsd — make help lists the targets.
GO       ?= go
BIN      ?= bin/tlsd
PKGS     := ./...
PEBBLE_VERSION := v2.10.3
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
# What `tlsd version`, /status and tlsd_build_info say: the nearest tag (or the commit),
# the commit and its time.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS  := -X github.com/tlsd/tlsd/version.stamp=$(VERSION) -X github.com/tlsd/tlsd/version.revision=$(REVISION) -X github.com/tlsd/tlsd/version.date=$(DATE)

.PHONY: help build test test-under-load tools lint fmt run validate-examples bench gobench soak fuzz fuzz-corpus dist clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/tlsd, stamped with VERSION (git describe), the commit and its time
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tlsd

test: tools lint ## gofmt check, go vet, staticcheck, and every test with the race detector
	$(GO) test -race -count=1 $(PKGS)

RUNS ?= 3

test-under-load: tools lint ## every test with the race detector, RUNS (3) times in a row while a busy loop per core keeps the machine loaded
	@for run in $$(seq $(RUNS)); do \
		burners=""; for core in $$(seq $$(nproc)); do sh -c 'while :; do :; done' & burners="$$burners $$!"; done; \
		trap 'kill $$burners 2>/dev/null' EXIT INT TERM; \
		echo "run $$run of $(RUNS), $$(nproc) cores busy"; \
		$(GO) test -race -count=1 $(PKGS); status=$$?; \
		kill $$burners; trap - EXIT INT TERM; \
		[ $$status -eq 0 ] || exit $$status; \
	done

tools: ## install Pebble, the ACME test server the ACME tests run
	$(GO) install github.com/letsencrypt/pebble/v2/cmd/pebble@$(PEBBLE_VERSION) github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$(PEBBLE_VERSION)

lint: $(STATICCHECK) ## gofmt check, go vet and staticcheck
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fmt: ## format the code
	gofmt -w .

run: build ## serve examples/quickstart beside a demo upstream (Ctrl-C stops both)
	@chmod 600 examples/quickstart/certs/*.key
	@$(GO) build -o bin/demo-upstream ./internal/cmd/demo-upstream
	@mkdir -p .tlsd && ./$(BIN) ca --state-dir .tlsd > .tlsd/root.crt
	@echo "tlsd serves examples/quickstart on :8443. In another terminal:"
	@echo "  curl --cacert .tlsd/root.crt https://edge.localhost:8443/                                # terminated at the edge (internal CA)"
	@echo "  curl --cacert examples/quickstart/certs/demo-ca.crt https://agent.localhost:8443/         # terminated at the agent"
	@echo "  curl --cacert .tlsd/demo-upstream/ca.crt https://passthrough.localhost:8443/             # zero-knowledge passthrough"
	@echo "  openssl s_client -connect 127.0.0.1:8443 -servername passthrough.localhost -CAfile .tlsd/demo-upstream/ca.crt -brief </dev/null  # the upstream's own certificate"
	@echo "  curl -k https://unknown.localhost:8443/                                                  # refused: unrecognized_name"
	@echo "  the status page: http://127.0.0.1:9180/  (*.localhost resolves in curl and browsers; elsewhere use --resolve)"
	@echo
	@./bin/demo-upstream --state-dir .tlsd/demo-upstream & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	./$(BIN) run --state-dir .tlsd examples/quickstart

validate-examples: build ## tlsd validate every example (the Kubernetes one without its Secret's files)
	@chmod 600 examples/*/certs/*.key
	./$(BIN) validate $(filter-out examples/kubernetes,$(wildcard examples/*))
	./$(BIN) validate --skip-files --exclude deploy --exclude kustomization.yaml examples/kubernetes

bench: build ## tlsd beside HAProxy and nginx on the same load (installs them if missing); writes bench/results/DATE.md
	$(GO) build -o bin/benchrun ./bench/cmd/benchrun
	taskset -c 1 ./bin/benchrun -tlsd $(BIN) -peers

gobench: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

soak: ## 1,000 reloads under load (long-lived and new connections in all modes)
	$(GO) test -count=1 -run 'TestReloadUnderLoad|TestReloadNegativeControl' -v -timeout 30m ./daemon -args -soak

FUZZTIME ?= 30s

fuzz: ## fuzz the config loader, the address rules and the ClientHello peek, FUZZTIME (30 s) each
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./schema
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./iprange
	$(GO) test -run '^$$' -fuzz '^FuzzSet$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./iprange
	$(GO) test -run '^$$' -fuzz '^FuzzClientHello$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./edge

fuzz-corpus: ## keep up to 40 of the inputs fuzzing found, under testdata/fuzz/, for go test to replay
	@for t in schema:FuzzLoad iprange:FuzzParse iprange:FuzzSet edge:FuzzClientHello; do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		src=$$($(GO) env GOCACHE)/fuzz/github.com/tlsd/tlsd/$$pkg/$$name; \
		mkdir -p $$pkg/testdata/fuzz/$$name; \
		ls -S -r $$src 2>/dev/null | head -40 | while read f; do cp $$src/$$f $$pkg/testdata/fuzz/$$name/; done; \
		echo "$$pkg/testdata/fuzz/$$name: $$(ls $$pkg/testdata/fuzz/$$name | wc -l) inputs"; \
	done

DIST_PLATFORMS := linux/amd64 linux/arm64

dist: ## release archives for linux/amd64 and linux/arm64 (static, stamped) with SHA256SUMS, in dist/
	@rm -rf dist && mkdir -p dist
	@for p in $(DIST_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; name=tlsd-$(VERSION)-$$os-$$arch; \
		mkdir -p dist/$$name && \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o dist/$$name/tlsd ./cmd/tlsd && \
		cp README.md deploy/systemd/tlsd.service dist/$$name/ && \
		tar -C dist -czf dist/$$name.tar.gz $$name && rm -rf dist/$$name || exit 1; \
	done
	@cd dist && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

clean: ## remove build output
	rm -rf bin dist
