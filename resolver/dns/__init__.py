"""The network's DNS face: identifiers under DNS names, the hierarchy as delegations."""
