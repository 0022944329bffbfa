"""SNS-compatible topics: topics and subscriptions in the store, Publish that stores what
each matching subscription is owed before it answers, and the fan-out that delivers it to
functions (through the async queue), SQS queues of this nimbus and http(s) endpoints."""
