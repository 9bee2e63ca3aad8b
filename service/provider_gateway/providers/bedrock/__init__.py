"""AWS Bedrock: `codec` (pure wire format), `models` (ids and families), `errors`, `adapter` (I/O)."""
