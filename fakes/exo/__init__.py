"""The sans-IO model of Exchange Online's SMTP edge.

Nothing here opens a socket, starts a loop or touches aiosmtpd or dnslib: events go in,
decisions come out, and the clock and randomness are handed in by the caller.
"""
