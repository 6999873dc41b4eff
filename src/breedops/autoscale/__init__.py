"""An autoscaling policy simulator: traffic curves replayed against target tracking."""
