"""HTTP triggers: function URLs and HTTP API routes (the data plane)."""
