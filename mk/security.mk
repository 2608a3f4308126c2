# Host isolation beyond the container spec (included by the top-level Makefile): gVisor
# as a Docker runtime, and the AppArmor profile of the sandboxes.
#
#   make gvisor-setup    install Debian's runsc if missing and register it with the engine
#                        as runtime "runsc" (merged into /etc/docker/daemon.json, dockerd
#                        reloaded with SIGHUP only when that file changed); idempotent;
#                        fails with a message when it cannot (no root, apt failure...).
#                        Details: scripts/gvisor-setup.sh --help
#   make gvisor-check    exit 0 when the engine lists runsc with our runtime arguments
#   make apparmor-check  compile apparmor/code-executor-sandbox without loading it (works
#                        on kernels without AppArmor; needs Debian's apparmor package)
#   make apparmor-load   load (or replace) the profile into the kernel when the kernel has
#                        AppArmor; prints why not and succeeds when it has not
#
# With sandbox.runtime = "auto" (the default) the server uses runsc as soon as the engine
# lists it; sandbox.apparmor = "auto" applies the profile once it is loaded (see
# apparmor/README.md).

SECURITY_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
APPARMOR_PROFILE := $(SECURITY_DIR)/apparmor/code-executor-sandbox
# The feature set the profile is compiled against by apparmor-check: the ABI it pins
# (`abi <abi/3.0>,`), shipped by the apparmor package. Compiling against it, rather than
# against the running kernel's features, checks every rule on any host, including the
# signal, ptrace, mount and network rules that a kernel without AppArmor would drop.
APPARMOR_FEATURES ?= /etc/apparmor.d/abi/3.0
# /usr/sbin is not on every user's PATH.
APPARMOR_PARSER ?= $(or $(shell command -v apparmor_parser 2>/dev/null),/usr/sbin/apparmor_parser)
SECURITY_SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: gvisor-setup gvisor-check apparmor-check apparmor-load

gvisor-setup:
	@$(SECURITY_DIR)/scripts/gvisor-setup.sh

gvisor-check:
	@$(SECURITY_DIR)/scripts/gvisor-setup.sh --check

apparmor-check:
	@test -x $(APPARMOR_PARSER) || { \
	  echo "apparmor-check: $(APPARMOR_PARSER) not found: install Debian's apparmor package (apt-get install apparmor)"; exit 1; }
	@test -r $(APPARMOR_FEATURES) || { \
	  echo "apparmor-check: $(APPARMOR_FEATURES) is missing (it comes with the apparmor package)"; exit 1; }
	@$(APPARMOR_PARSER) --skip-kernel-load --skip-cache --features-file $(APPARMOR_FEATURES) \
	  --warn=all --Werror --ofile /dev/null $(APPARMOR_PROFILE) && \
	  echo "apparmor-check: $(APPARMOR_PROFILE) compiles (features $(APPARMOR_FEATURES))"

apparmor-load:
	@if [ "$$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" != Y ]; then \
	  if [ -d /sys/module/apparmor ]; then \
	    echo "AppArmor is disabled in this kernel (/sys/module/apparmor/parameters/enabled is not Y): profile not loaded"; \
	  else \
	    echo "AppArmor is not available in this kernel (/sys/module/apparmor absent): profile not loaded"; \
	  fi; \
	  exit 0; \
	fi; \
	test -x $(APPARMOR_PARSER) || { \
	  echo "apparmor-load: $(APPARMOR_PARSER) not found: install Debian's apparmor package (apt-get install apparmor)"; exit 1; }; \
	$(SECURITY_SUDO) $(APPARMOR_PARSER) -r -W $(APPARMOR_PROFILE) || exit 1; \
	if $(SECURITY_SUDO) grep -q '^code-executor-sandbox (' /sys/kernel/security/apparmor/profiles; then \
	  echo "apparmor-load: profile code-executor-sandbox loaded ($$($(SECURITY_SUDO) grep '^code-executor-sandbox (' /sys/kernel/security/apparmor/profiles))"; \
	else \
	  echo "apparmor-load: apparmor_parser succeeded but the kernel does not list code-executor-sandbox"; exit 1; \
	fi
