"""IAM (query protocol, global): users, roles, policies and access keys, and the enforcement of policies
on every request (``authorize``)."""
