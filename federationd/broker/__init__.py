"""AMQP transport (pika, TLS only) and broker provisioning (RabbitMQ management HTTP API)."""
