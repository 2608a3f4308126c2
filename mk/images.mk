# Sandbox images (included by the top-level Makefile).
#
#   make image-build   build code-executor/{rootfs,python,deno}:<crate version>; only the
#                      images whose inputs changed are rebuilt (seconds when none did)
#   make image-clean   remove those images, every version (the downloaded Deno wheel in
#                      images/.cache/ stays; delete that directory to drop it)
#
# CE_FORCE=1 make image-build rebuilds everything, e.g. for Debian security updates.
# Details: images/build.sh --help.

IMAGES_BUILD := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../images/build.sh)

.PHONY: image-build image-clean image-rootfs image-python image-deno

image-build:
	$(IMAGES_BUILD) all

image-rootfs image-python image-deno: image-%:
	$(IMAGES_BUILD) $*

image-clean:
	$(IMAGES_BUILD) clean
