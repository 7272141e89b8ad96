"""Test tooling that needs more than the provider: SeaweedFS as S3, a cutting TCP proxy, the local stack."""
