"""federationd: links independent groupware sites over RabbitMQ-over-TLS.

Importing this package has no side effects: no connection, no config, no thread.
"""

__version__ = "0.1.0"
