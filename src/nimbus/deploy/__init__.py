"""Deploying a folder or a SAM / CloudFormation template to a nimbus: client-side code the
``nimbus deploy`` command uses. It talks to the server only through boto3 clients with an
endpoint URL, as a user's script would, so it deploys to a remote nimbus as well.

The way of a deploy: ``template`` loads YAML keeping line numbers, ``sam`` expands SAM with
AWS's own transform, ``stack`` validates every resource (``kinds``), resolves intrinsics
(``intrinsics``) in dependency order and applies only what changed, recording what it made
in ``state``; ``package`` builds and zips code folders."""
