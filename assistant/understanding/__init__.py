"""Understanding customer messages: intent, sentiment and frustration, churn signals, injection."""
