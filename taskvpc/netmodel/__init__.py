"""Pure network model: IPAM, security-group rules and their reference evaluator, EC2 Describe* filters.

Standard library only, no I/O: plain data in, plain data (or a typed ``ClientError``) out. The EC2 control
plane calls these functions; the data plane (netns, veth, nftables) and a future reachability analyser are
checked against :mod:`taskvpc.netmodel.evaluator`.

Error messages follow real EC2 where a public report of the exact text was found; each one carries a
comment with its source, and ``# unconfirmed`` marks the ones written by analogy.
"""
