"""classemo on Ray Serve: a FastAPI ingress deployment in front of a batched, autoscaled model deployment.

Launch with `serve run serve/config.yaml` (or `serve deploy serve/config.yaml` to a running cluster); the
`args:` block is validated by `ServeArgs`. This module only binds the two deployments: `serve.gateway.APIGateway`
(HTTP, API keys, input checks, durable video jobs) in front of `serve.model.ClassEmoModel` (one `Predictor`,
batched, autoscaled).
"""

from ray import serve

from serve.gateway import APIGateway
from serve.model import ClassEmoModel
from serve.schemas import ServeArgs


def build_app(args: ServeArgs) -> serve.Application:
    """Serve application builder (`import_path: serve.app:build_app`); `args` come from config.yaml.

    Args:
        args: The validated launch arguments.

    Returns:
        The bound application: APIGateway -> ClassEmoModel.
    """
    model = ClassEmoModel.options(
        autoscaling_config={
            "min_replicas": args.min_replicas,
            "max_replicas": args.max_replicas,
            "initial_replicas": args.min_replicas,
            "target_ongoing_requests": args.target_ongoing_requests,
            "upscale_delay_s": args.upscale_delay_s,
            "downscale_delay_s": args.downscale_delay_s,
            "look_back_period_s": args.look_back_period_s,
        },
        max_ongoing_requests=args.max_ongoing_requests,
        max_queued_requests=args.max_queued_requests,
        user_config=args.model_user_config(),
        health_check_period_s=args.health_check_period_s,
        health_check_timeout_s=args.health_check_timeout_s,
        ray_actor_options={"num_cpus": args.model_num_cpus, "num_gpus": args.model_num_gpus},
    ).bind(device=args.device, dtype=args.dtype, torch_threads=args.torch_threads, debug=args.debug_enabled())
    # The ingress does little CPU work per request; it sheds load itself when its own queue is full. It holds no
    # state (video jobs live in their store, run by detached actors), so a replaced replica loses nothing.
    gateway = APIGateway.options(
        ray_actor_options={"num_cpus": 0.25},
        max_ongoing_requests=max(64, 4 * args.max_ongoing_requests),
        max_queued_requests=args.max_queued_requests,
        backpressure_config={"status_code": 503, "retry_after_s": args.retry_after_s},
        health_check_period_s=args.health_check_period_s,
        health_check_timeout_s=args.health_check_timeout_s,
    )
    # The ingress does not get the model's user_config fields, so a model switch never restarts it.
    return gateway.bind(model, args.model_dump(exclude=set(args.model_user_config())))
