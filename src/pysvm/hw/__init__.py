"""The simulated hardware: GPU engines whose accesses fault into the Xe driver."""
