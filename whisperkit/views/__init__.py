"""Views: plots, the HTML report and the notebook app."""
