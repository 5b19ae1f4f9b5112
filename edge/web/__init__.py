"""The grower's status page served by the agent."""
