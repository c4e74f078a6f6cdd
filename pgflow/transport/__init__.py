"""SMS transports: the interface (`base`) and its implementations (`retell`)."""

from pgflow.transport.base import SendResult, SmsTransport, TransportError

__all__ = ["SendResult", "SmsTransport", "TransportError"]
