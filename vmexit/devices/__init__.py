"""Device models. Port devices implement `read(port, size) -> int` and `write(port, size, value)`;
timed devices also implement `next_event() -> cycle | None` and `advance(now)`.

Devices receive only what they need: the clock (for time), an IRQ line (a callable) and, for the
exit device, a callback. The table of which devices a domain has is pc.py; where each is handled
is the exit model's (hypervisors/).
"""
