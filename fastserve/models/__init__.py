"""Model side: OpenVINO compile, execution pools, the repository. Knows no HTTP and no JSON."""
