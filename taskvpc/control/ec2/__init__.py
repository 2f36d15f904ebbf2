"""EC2's VPC model: VPCs, subnets, security groups and rules, network interfaces, tags, regions.

One module per resource; ``describe.py`` holds what every Describe* does alike, ``errors.py`` EC2's
codes and texts, ``task_enis.py`` the hooks the ECS task lifecycle uses for task ENIs.
"""
