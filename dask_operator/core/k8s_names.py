"""Kubernetes' name rules, once: DNS-1123 labels (namespaces) and subdomains (object names).

The patterns are JSON Schema (ECMA-262) patterns, also served in OpenAPI
documents; in Python match them with the compiled forms' `fullmatch`, so
that `$` cannot accept a trailing newline.
"""

from __future__ import annotations

import re

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
DNS_LABEL_RE = re.compile(DNS_LABEL)
DNS_SUBDOMAIN_RE = re.compile(DNS_SUBDOMAIN)
