"""Tests of the cloud bridge against a real Mosquitto and a real PostgreSQL."""
