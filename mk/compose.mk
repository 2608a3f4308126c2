# Team deployment with docker-compose (included by the top-level Makefile).
#
#   make up     build what is missing (the images, code-executor/server with the release
#               binary), prepare the host (keys file, downstream config, socket
#               directory), start compose/docker-compose.yml and wait until /healthz answers
#   make down   stop it (running executions get the grace period, then the sandboxes are
#               removed) and remove the containers; the audit-log volume stays
#               (docker volume rm code-executor_audit drops it)
#
# Variables (make or environment): COMPOSE (default docker-compose if installed, else
# "docker compose"), COMPOSE_PROJECT (code-executor), and those of the compose file:
# CE_PORT, CE_KEYS_FILE, CE_MCP_CONFIG, CE_CONFIG, CE_SOCKET_BASE, CE_ALLOWED_HOSTS, ...
# (see compose/docker-compose.yml). As a non-root user, the host set-up steps use sudo.

COMPOSE_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../compose)
COMPOSE ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
COMPOSE_PROJECT ?= code-executor
DOCKER_SOCKET ?= /var/run/docker.sock
CE_PORT ?= 3333
CE_KEYS_FILE ?= $(COMPOSE_DIR)/keys.txt
CE_MCP_CONFIG ?= $(COMPOSE_DIR)/mcp.json
CE_SOCKET_BASE ?= /var/lib/code-executor-compose
# The server image's user (images/server/Dockerfile).
CE_SERVER_UID := 10001
CE_SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
# The group of the Docker socket, which the server's user joins (group_add).
DOCKER_GID ?= $(shell stat -c %g $(DOCKER_SOCKET) 2>/dev/null)

COMPOSE_RUN = DOCKER_GID=$(DOCKER_GID) CE_PORT=$(CE_PORT) CE_SOCKET_BASE=$(CE_SOCKET_BASE) \
	CE_KEYS_FILE=$(abspath $(CE_KEYS_FILE)) CE_MCP_CONFIG=$(abspath $(CE_MCP_CONFIG)) \
	$(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_DIR)/docker-compose.yml

.PHONY: up down

up: image-build
	@test -S $(DOCKER_SOCKET) && test -n "$(DOCKER_GID)" || \
	  { echo "make up: $(DOCKER_SOCKET) is not a socket: the compose server needs the local Docker engine's socket"; exit 1; }
	@set -e; keys=$(abspath $(CE_KEYS_FILE)); \
	if [ ! -e "$$keys" ]; then \
	  (umask 077; printf '# client-name:key, one per line (see compose/keys.example.txt)\nlocal:%s\n' \
	    "$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" >"$$keys"); \
	  echo "make up: created $$keys with a random key for the client 'local'"; \
	fi; \
	$(CE_SUDO) chgrp $(CE_SERVER_UID) "$$keys"; $(CE_SUDO) chmod 0640 "$$keys"; \
	mcp=$(abspath $(CE_MCP_CONFIG)); \
	if [ ! -e "$$mcp" ]; then cp $(COMPOSE_DIR)/mcp.example.json "$$mcp"; echo "make up: created $$mcp (no downstream servers; edit it to add some)"; fi; \
	$(CE_SUDO) install -d -m 0711 -o $(CE_SERVER_UID) -g $(CE_SERVER_UID) $(CE_SOCKET_BASE)
	$(COMPOSE_RUN) up -d
	@for i in $$(seq 1 60); do \
	  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
	       http://127.0.0.1:$(CE_PORT)/healthz 2>/dev/null; then \
	    echo "code-executor-mcp is up: MCP over Streamable HTTP at http://127.0.0.1:$(CE_PORT)/mcp"; \
	    echo "  API keys: $(abspath $(CE_KEYS_FILE)) (send Authorization: Bearer <key>)"; \
	    echo "  readiness: curl http://127.0.0.1:$(CE_PORT)/readyz (503 with the reasons while the warm pool fills)"; \
	    echo "  metrics:   curl -H \"Authorization: Bearer \$$KEY\" http://127.0.0.1:$(CE_PORT)/metrics"; \
	    echo "  Claude Code: claude mcp add --transport http code-executor http://127.0.0.1:$(CE_PORT)/mcp --header \"Authorization: Bearer \$$KEY\""; \
	    echo "  logs: DOCKER_GID=$(DOCKER_GID) $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml logs -f; stop: make down"; \
	    exit 0; \
	  fi; sleep 1; \
	done; \
	echo "make up: no answer on http://127.0.0.1:$(CE_PORT)/healthz after 60 s; the server's log:"; \
	$(COMPOSE_RUN) logs --tail 40 server; exit 1

down:
	@set -e; cid=$$($(COMPOSE_RUN) ps -q server 2>/dev/null || true); \
	host=$$( [ -n "$$cid" ] && docker inspect -f '{{.Config.Hostname}}' $$cid 2>/dev/null || true); \
	$(COMPOSE_RUN) down; \
	if [ -n "$$host" ]; then \
	  left=$$(docker ps -a --filter label=code-executor.managed=true --format '{{.ID}} {{.Label "code-executor.owner"}}' | grep -c " $$host:" || true); \
	  if [ "$$left" -ne 0 ]; then echo "make down: $$left sandbox container(s) of the server are left (docker ps -a --filter label=code-executor.managed=true)"; exit 1; fi; \
	fi
