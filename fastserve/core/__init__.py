"""The transport-neutral inference core: decoded request -> bind -> select -> run -> result.

REST (fastserve/handlers.py) and every other transport only decode their wire format into a
v2 InferRequest and encode the core's Outcome; the core knows neither HTTP nor protobuf.
"""
