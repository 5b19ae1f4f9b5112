# The commands the README names. `make demo` and `make test` set up everything they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/datasets/leaf-health
PYTEST_ARGS ?=

.PHONY: help demo test lint venv system-deps model bench dist clean db-backup db-restore \
	db-restore-point db-backup-info \
	fleet-venv fleet-lint fleet-test soak wan-outage tools-venv container-test k8s-check \
	stack-test firmware-campaign image image-test binfmt

help:
	@echo "make demo    run the agent on embedded defaults (synthetic camera, no broker)"
	@echo "make test    create the venv, install what the tests need, run them"
	@echo "make lint    ruff and mypy"
	@echo "make model DATA=...   retrain and export the plant-health model"
	@echo "make bench   benchmarks (canopy vs PlantCV, capture pipeline, inference)"
	@echo "make dist    build the wheel devices install"
	@echo "make image ARCH=amd64|arm64   the appliance disk image (needs root; cached)"
	@echo "make image-test   boot the image in QEMU: the whole power-cut campaign"
	@echo "make db-backup / db-restore [TARGET_NAME=...|TARGET_TIME=...]   the bridge database (pgBackRest)"
	@echo "make db-restore-point NAME=...   a named point to restore to (before a migration)"
	@echo "make fleet-lint / fleet-test   ansible-lint and the playbooks run against localhost"
	@echo "make container-test   the bridge image in a private dockerd; compose and Kubernetes checks"
	@echo "make stack-test   the one-server stack's images run together (slow)"
	@echo "make k8s-check   render the Kubernetes overlays, validate them, run checkov"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[edge,bridge,dev]'
	touch $@

venv: $(STAMP)

# Debian packages the integration tests run for real: a private broker and database
# per test run, and a headless browser for the status page. Installed only when
# missing; needs root or sudo.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing="$$missing logrotate"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	[ -x /usr/sbin/dockerd ] || missing="$$missing docker.io"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	[ -x /usr/sbin/debootstrap ] || missing="$$missing debootstrap"; \
	command -v pgbackrest >/dev/null 2>&1 || missing="$$missing pgbackrest"; \
	command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$$missing qemu-system-x86"; \
	command -v qemu-img >/dev/null 2>&1 || missing="$$missing qemu-utils"; \
	command -v mcopy >/dev/null 2>&1 || missing="$$missing mtools"; \
	[ -x /usr/sbin/mkfs.vfat ] || missing="$$missing dosfstools"; \
	[ -x /usr/sbin/sfdisk ] || missing="$$missing fdisk"; \
	[ -d /usr/lib/grub/i386-pc ] || missing="$$missing grub-pc-bin"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: venv
	$(BIN)/cultivai-edge run --demo

test: venv system-deps fleet-venv tools-venv
	$(BIN)/pytest $(PYTEST_ARGS)

# Ansible lives in a venv of its own; tests/fleet run the playbooks against localhost.
FLEET_VENV  := .venv-fleet
FLEET_STAMP := $(FLEET_VENV)/.installed

$(FLEET_STAMP): ansible/requirements.txt
	$(PYTHON) -m venv $(FLEET_VENV)
	$(FLEET_VENV)/bin/pip install --quiet --upgrade pip
	$(FLEET_VENV)/bin/pip install --quiet -r ansible/requirements.txt
	touch $@

fleet-venv: $(FLEET_STAMP)

fleet-lint: fleet-venv
	cd ansible && PATH="$(CURDIR)/$(FLEET_VENV)/bin:$$PATH" ansible-lint --profile production --offline
	cd ansible && for p in site.yml provision.yml update.yml model-rollout.yml rollback.yml; do \
	  PATH="$(CURDIR)/$(FLEET_VENV)/bin:$$PATH" ansible-playbook --syntax-check $$p || exit 1; done

fleet-test: venv system-deps fleet-venv tools-venv
	$(BIN)/pytest tests/fleet $(PYTEST_ARGS)

# The bridge's fault campaign, long: scripted devices, the shipped broker config, the
# bridge and PostgreSQL through seeded broker/bridge/database/device faults; `make test`
# runs a 40 s version. SOAK_S, SOAK_SEED and SOAK_DEVICES tune it.
SOAK_S ?= 600
SOAK_SEED ?= 1
SOAK_DEVICES ?= 5
soak: venv system-deps
	CULTIVAI_CAMPAIGN_S=$(SOAK_S) CULTIVAI_CAMPAIGN_SEED=$(SOAK_SEED) \
	  CULTIVAI_CAMPAIGN_DEVICES=$(SOAK_DEVICES) \
	  $(BIN)/pytest tests/bridge/test_campaign.py -s -p no:randomly $(PYTEST_ARGS)

# A site broker bridged to the cloud broker, its WAN link cut for WAN_CUT_S under load;
# `make test` cuts it for 15 s.
WAN_CUT_S ?= 60
wan-outage: venv system-deps
	CULTIVAI_WAN_CUT_S=$(WAN_CUT_S) $(BIN)/pytest tests/bridge/test_site_broker.py -s $(PYTEST_ARGS)

# The firmware updater killed (SIGKILL) at every one of its steps, then booted again;
# `make test` runs one step per phase.
firmware-campaign: venv
	CULTIVAI_FIRMWARE_CAMPAIGN=1 $(BIN)/pytest tests/test_firmware.py -s -p no:randomly $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint cloud_bridge/Dockerfile deploy/compose/*/Dockerfile

# Kubernetes manifest checks (kubectl with kustomize, kubernetes-validate, checkov)
# live in a venv of their own: checkov alone pulls in a few hundred packages.
TOOLS_VENV  := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed

$(TOOLS_STAMP): deploy/k8s/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/pip install --quiet -r deploy/k8s/requirements-tools.txt
	touch $@

tools-venv: $(TOOLS_STAMP)

# The bridge image built and run in a private dockerd (debootstrapped base, cached under
# $${XDG_CACHE_HOME:-~/.cache}/cultivai), the compose stack's checks, the manifests.
container-test: venv system-deps tools-venv
	$(BIN)/pytest tests/containers $(PYTEST_ARGS)

# The one-server stack's images (Debian packages on the local base) and files run
# together on the host network: slow on a cold cache (three apt-based image builds).
stack-test: venv system-deps
	CULTIVAI_STACK_TEST=1 $(BIN)/pytest tests/containers/test_stack.py -s $(PYTEST_ARGS)

k8s-check: tools-venv
	@mkdir -p build/k8s
	for o in staging production; do \
	  $(TOOLS_VENV)/bin/kubectl kustomize deploy/k8s/overlays/$$o > build/k8s/$$o.yaml || exit 1; \
	  for v in 1.36.0 1.37.0; do \
	    $(TOOLS_VENV)/bin/kubernetes-validate --strict --quiet -k $$v build/k8s/$$o.yaml || exit 1; done; \
	done
	$(TOOLS_VENV)/bin/checkov --quiet --compact --skip-download --framework kubernetes -d build/k8s

model:
	$(PYTHON) -m venv .venv-train
	.venv-train/bin/pip install --quiet --upgrade pip
	.venv-train/bin/pip install --quiet -e '.[train]'
	.venv-train/bin/python -m models.train --data $(DATA) --out models/plant_health --seed 1234
	.venv-train/bin/python -m models.stand_ins --model models/plant_health
	.venv-train/bin/python -m models.card --model models/plant_health
	@echo "leave-one-crop-out figures: .venv-train/bin/python -m models.loco --data $(DATA)"

bench: venv
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --upgrade pip
	.venv-bench/bin/pip install --quiet -e '.[edge]' plantcv
	.venv-bench/bin/python bench/canopy_vs_plantcv.py
	$(BIN)/python bench/capture_pipeline.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/publish.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/bridge_ingest.py
	nice -n 10 $(BIN)/python bench/fleet_db_scale.py --plans
	$(BIN)/python bench/timelapse.py

dist: venv
	$(BIN)/pip install --quiet build
	$(BIN)/python -m build --wheel --outdir dist

# The cloud bridge's PostgreSQL database (docs/bridge.md, "Backups and recovery").
# Default: pgBackRest base backups plus the continuous WAL archive the postgres role
# sets up; restores go to the end of the archive, a restore point (TARGET_NAME) or a
# time (TARGET_TIME), with PostgreSQL stopped. DB_BACKUP=dump: a logical custom-format
# dump instead (BRIDGE_DB is a libpq URL; the password comes from ~/.pgpass), restored
# in one transaction.
DB_BACKUP ?= pgbackrest
PGBACKREST_CONFIG ?= /etc/pgbackrest/pgbackrest.conf
PGBACKREST_STANZA ?= cultivai
PGBACKREST_USER ?= postgres
BACKUP_TYPE ?= full
TARGET_NAME ?=
TARGET_TIME ?=
# A superuser connection for restore points (peer authentication as postgres by default).
ADMIN_DB ?= postgresql:///postgres
BACKUP_OPS = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m cloud_bridge.ops.backup --config="$(PGBACKREST_CONFIG)" \
  --stanza="$(PGBACKREST_STANZA)" --user="$(PGBACKREST_USER)"
BRIDGE_DB ?= postgresql://cultivai_bridge@localhost/cultivai
BACKUP_STAMP := $(shell date -u +%Y%m%d-%H%M%S)
BACKUP ?= backups/cultivai-$(BACKUP_STAMP).dump

db-backup:
ifeq ($(DB_BACKUP),dump)
	@mkdir -p $(dir $(BACKUP))
	pg_dump --format=custom --no-owner --file="$(BACKUP)" "$(BRIDGE_DB)"
else
	$(BACKUP_OPS) backup --type="$(BACKUP_TYPE)"
endif

db-restore-point:
	@test -n "$(NAME)" || { echo "make db-restore-point NAME=before-0004"; exit 2; }
	$(BACKUP_OPS) restore-point "$(NAME)" --dsn="$(ADMIN_DB)"

db-restore:
ifeq ($(DB_BACKUP),dump)
	@test -f "$(BACKUP)" || { echo "make db-restore DB_BACKUP=dump BACKUP=path/to/file.dump"; exit 2; }
	@# The partitioned observations table is dropped first (with its weekly partitions):
	@# pg_restore --clean alone cannot drop a partition's inherited primary key.
	{ echo 'DROP TABLE IF EXISTS observations CASCADE;'; \
	  pg_restore --clean --if-exists --no-owner --file=- "$(BACKUP)"; } \
	  | psql --no-psqlrc --quiet --single-transaction -v ON_ERROR_STOP=1 --dbname="$(BRIDGE_DB)"
else
	$(BACKUP_OPS) restore $(if $(TARGET_NAME),--name="$(TARGET_NAME)") \
	  $(if $(TARGET_TIME),--time="$(TARGET_TIME)")
endif

db-backup-info:
	$(BACKUP_OPS) info

clean:
	rm -rf $(VENV) .venv-train .venv-bench $(FLEET_VENV) $(TOOLS_VENV) dist build .pytest_cache .mypy_cache \
	  .ruff_cache

# The appliance disk image (image/): debootstrap + the appliance layer, cached under
# $${XDG_CACHE_HOME:-~/.cache}/cultivai/image. arm64 runs through qemu-user-static.
ARCH ?= amd64
IMAGE_FORMAT ?= raw
image: dist
	@[ "$(ARCH)" = amd64 ] || $(MAKE) --no-print-directory binfmt
	$(BIN)/python image/build.py --arch $(ARCH) --format $(IMAGE_FORMAT) \
	  --wheel "$$(ls -t dist/cultivai_edge-*.whl | head -1)"

# Register the aarch64 emulator with binfmt_misc (mounting it when needed).
binfmt:
	@command -v update-binfmts >/dev/null 2>&1 && [ -e /usr/bin/qemu-aarch64-static ] || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	    --no-install-recommends qemu-user-static binfmt-support; }
	@[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

# The whole QEMU campaign: 20 power cuts during captures, cuts at random points of an
# update, and cuts that also drop the writes the guest had not flushed. `make test`
# runs a short set of the same tests.
image-test: venv system-deps
	CULTIVAI_IMAGE_CAMPAIGN=full $(BIN)/pytest tests/image -m "image" -p no:randomly $(PYTEST_ARGS)
