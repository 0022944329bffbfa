"""AWS wire protocols (query, json, rest-json, rest-xml) driven by botocore's own service
models: requests parsed into an operation and its parameters, results and errors
serialised as the model says, requests routed to the service they are for. A service
nimbus speaks is only its handlers; its shapes are AWS's."""
