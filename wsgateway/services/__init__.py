"""Services: one per channel, each a class with connect, message and disconnect hooks."""

from .base import ActionService, Connection, Service, service_classes

__all__ = ["ActionService", "Connection", "Service", "service_classes"]
