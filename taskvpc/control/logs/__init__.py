"""Amazon CloudWatch Logs (JSON 1.1, target prefix ``Logs_20140328``): groups, streams, events."""
