# The two commands of the README. Both set up what they need on a fresh machine.
.PHONY: demo test

# The main job. Until `idres up` lands (issue 4) it parses sample identifiers of each kind.
demo:
	bash deploy/setup.sh
	.venv/bin/idres parse 88.100.1/ABC-123 06901234567892 1.2.156.3001.1 \
	  https://id.example.com/01/09506000134352/10/LOT7 ecode:10001000000000000001 \
	  did:bid:ab12:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq did:cn:88.100.1

test:
	bash deploy/test.sh
