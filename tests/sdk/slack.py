"""Drives Slack's official Python SDK (slack_sdk.signature) for tests/it/sdk.rs.

Reads one JSON request on stdin ({secret, payload, timestamp, signature}) and prints one
JSON answer: `sdk` (the headers SignatureVerifier signs) and `accepts` /
`accepts_tampered` (whether it accepts what forebay signed, and the same with the body
changed). Nothing here talks to the network.
"""

import json
import sys

from slack_sdk.signature import SignatureVerifier

request = json.load(sys.stdin)
verifier = SignatureVerifier(request["secret"])
timestamp = str(request["timestamp"])
payload = request["payload"]
json.dump(
    {
        "sdk": {
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": verifier.generate_signature(timestamp=timestamp, body=payload),
        },
        "accepts": verifier.is_valid(payload, timestamp, request["signature"]),
        "accepts_tampered": verifier.is_valid(payload + " ", timestamp, request["signature"]),
    },
    sys.stdout,
)
