"""Process rewards and test-time search over reasoning steps."""
