"""CultivAI cloud bridge: MQTT to PostgreSQL for the whole fleet."""
