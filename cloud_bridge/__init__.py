"""CultivAI cloud bridge: MQTT to PostgreSQL for the whole fleet, and its read API."""
