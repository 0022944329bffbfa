"""The asynchronous path: the dispatcher that runs queued events with Lambda's retries
and maximum event age, and where their outcome goes (destinations, dead letters). Event
sources (schedules, queues, brokers) join this family."""
