"""A function answering HTTP through a function URL (API Gateway's payload format 2.0).

GET /?name=you answers {"message": "hello, you", "path": "/"}; any other method gets 405.
"""

import json


def handler(event, context):
    http = event.get("requestContext", {}).get("http", {})
    if http.get("method", "GET") != "GET":
        return {"statusCode": 405, "headers": {"allow": "GET"}, "body": "only GET\n"}
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    body = {"message": f"hello, {name}", "path": event.get("rawPath", "/")}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }
