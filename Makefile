# The two commands of the README. Both set up what they need on a fresh machine.
.PHONY: up test demo bench

# The main job: a whole network (1 super, 2 backbone, 3 sub-chain nodes) on this machine.
up:
	bash deploy/setup.sh
	.venv/bin/idres up

test:
	bash deploy/test.sh

# Parse one identifier of each kind (no servers).
demo:
	bash deploy/setup.sh
	.venv/bin/idres parse 88.100.1/ABC-123 06901234567892 1.2.156.3001.1 \
	  https://id.example.com/01/09506000134352/10/LOT7 ecode:10001000000000000001 \
	  did:bid:ab12:efGsChQR2u32pvwJcDNPoYHhGXL1Rgq did:cn:88.100.1

# The Singles' Day benchmark (benchmarks/README.md): PROFILE=quick takes about a
# minute, PROFILE=singles-day about half an hour; OUT=DIR chooses the report folder.
PROFILE ?= quick
bench:
	bash deploy/setup.sh --bench
	.venv/bin/idres bench --profile $(PROFILE) $(if $(OUT),--out $(OUT))
