"""Stand-ins for the AWS services the scaled profile's app servers talk to, for guests booted here.

The app servers run their launch template's user-data unchanged; what they reach instead of AWS is here:

- `dns`: the VPC's resolver (dnsmasq on the bridge): every `*.amazonaws.com` name answers with the bridge's
  address, everything else is forwarded to the host's resolver (the package mirror, PyPI);
- `tls`: a certificate authority the guests trust (as an AMI trusts AWS's) and the certificates it signs;
- `awsapi`: AWS's HTTPS endpoints on the bridge's port 443: moto in server mode (SSM SecureStrings, S3, STS)
  and the Auto Scaling calls an app server makes (moto 5.2 has no lifecycle actions: `group` answers them);
- `imds`: the instance metadata service (IMDSv2 only) at 169.254.169.254, one identity per guest address;
- `database`: PostgreSQL with TLS on the bridge, standing in for RDS (`sslmode=require` must hold);
- `balancer`: the load balancer — listener rules, health checks with the target group's own interval and
  thresholds, routing to healthy targets only, draining — and `cdn`: CloudFront's path routing in front of it;
- `agent`: the SSM agent package the boot downloads, as a stand-in .deb served from the S3 stand-in;
- `group`: the Auto Scaling group, played from its declared settings (launch before terminate, the lifecycle
  hook, replacing an abandoned or unhealthy instance, the instance refresh).

`harness.scaledsite` puts them together. None of this is product code: the guests' own scripts are unchanged.
"""
