"""Elastic Load Balancing v2: recognised (signed requests are routed and answered), not yet served."""
