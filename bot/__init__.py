"""The shell: configuration, the Flask app and its /wechat webhook, the message pipeline,
and the `volbot` command line. Only this package knows the WeChat protocol."""
