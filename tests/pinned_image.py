"""A runtime image pinned by digest, as `mlic pipeline compile|submit|trainjob` demand (a tag alone is refused)."""

PINNED_IMAGE = "registry.example.com/mlic-runtime@sha256:" + "0" * 64
