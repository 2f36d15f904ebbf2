"""IAM policy language, pure: documents parsed and validated as IAM does, and evaluated as AWS documents
(explicit Deny wins, then an Allow is needed, otherwise the implicit deny)."""
