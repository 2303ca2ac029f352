"""The wsgateway benchmark: ``make bench`` (or ``python -m bench --help``).

Not part of the wheel. Everything it starts listens on 127.0.0.1 only and stops by itself.
"""
